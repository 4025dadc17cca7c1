-- How much the shards of one selection overlap: one row per unordered pair of preferences
-- (pref_a < pref_b, pairs that share nothing included) with both shard sizes, the rows they
-- share and their Jaccard index shared / (rows_a + rows_b − shared).
-- Views: picked (pref_id, sample_id) registered by the stage, one row per shard row.
with sizes as (
    select pref_id, count(distinct sample_id) as rows
    from picked
    group by pref_id
),

pairs as (
    select a.pref_id as pref_a, b.pref_id as pref_b, a.rows as rows_a, b.rows as rows_b
    from sizes as a
    join sizes as b on a.pref_id < b.pref_id
),

shared as (
    select a.pref_id as pref_a, b.pref_id as pref_b, count(distinct a.sample_id) as shared
    from picked as a
    join picked as b on a.sample_id = b.sample_id and a.pref_id < b.pref_id
    group by all
),

final as (
    select
        p.pref_a,
        p.pref_b,
        p.rows_a,
        p.rows_b,
        coalesce(s.shared, 0) as shared,
        coalesce(s.shared, 0) / (p.rows_a + p.rows_b - coalesce(s.shared, 0)) as jaccard
    from pairs as p
    left join shared as s using (pref_a, pref_b)
)

select * from final
order by pref_a, pref_b
