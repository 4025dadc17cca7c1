-- Per-objective min and max over the pool, recorded in the manifest and the shard cards.
-- Params: $objectives, $splits.
with pool as (
    select s.sample_id from samples as s where list_contains($splits, s.split)
),

objectives as (
    select unnest($objectives) as objective, generate_subscripts($objectives, 1) as position
),

long_scores as (
    unpivot (select * from scores semi join pool using (sample_id))
    on columns(* exclude (sample_id))
    into name objective value score
),

final as (
    select o.objective, o.position, min(l.score) as lo, max(l.score) as hi, count(*) as n
    from long_scores as l
    join objectives as o using (objective)
    group by o.objective, o.position
)

select * from final order by position
