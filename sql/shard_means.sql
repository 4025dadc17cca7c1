-- Per preference of a set of shards: rows, mean distance, and the mean raw score of each
-- objective position (1-based, in the order of the raw lists), one row per (pref, position).
-- Views: shards (pref_id, distance, raw: list of scores in objective order).
with scores as (
    select pref_id, distance, unnest(raw) as value, generate_subscripts(raw, 1) as position
    from shards
),

final as (
    select
        pref_id,
        position,
        count(*) as rows,
        avg(value) as mean,
        avg(distance) as distance
    from scores
    group by pref_id, position
)

select * from final
order by pref_id, position
