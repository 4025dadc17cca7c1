-- Min-max normalise every objective over the pool (the rows of the chosen splits), and pack the
-- raw and normalised scores into lists in objective order, ready for non-dominated sorting.
-- Params: $objectives (objective names, in order), $splits (sample splits in the pool).
with pool as (
    select s.sample_id
    from samples as s
    where list_contains($splits, s.split)
),

objectives as (
    select unnest($objectives) as objective, generate_subscripts($objectives, 1) as position
),

long_scores as (
    unpivot (select * from scores semi join pool using (sample_id))
    on columns(* exclude (sample_id))
    into name objective value score
),

picked as (
    select l.sample_id, o.position, l.objective, l.score
    from long_scores as l
    join objectives as o using (objective)
),

bounds as (
    select objective, min(score) as lo, max(score) as hi
    from picked
    group by objective
),

normalised as (
    select
        p.sample_id,
        p.position,
        p.score,
        (p.score - b.lo) / nullif(b.hi - b.lo, 0) as norm
    from picked as p
    join bounds as b using (objective)
),

final as (
    select
        sample_id,
        list(score order by position) as raw,
        list(norm order by position) as norm
    from normalised
    group by sample_id
)

select * from final order by sample_id
