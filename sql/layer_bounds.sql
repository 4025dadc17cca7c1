-- Per-objective raw min and max over a layers table: the normalisation of its pool, for the
-- shard cards and the default evaluation bounds. One row per objective position (1-based, in
-- the order of the raw lists).
-- Views: layers (raw: list of scores in objective order).
with scores as (
    select unnest(raw) as value, generate_subscripts(raw, 1) as position
    from layers
),

final as (
    select position, min(value) as lo, max(value) as hi
    from scores
    group by position
)

select * from final
order by position
