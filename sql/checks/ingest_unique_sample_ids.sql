-- Every sample_id appears once in samples (ids are content hashes; duplicates were removed).
with counts as (
    select sample_id, count(*) as n
    from samples
    group by sample_id
),

final as (
    select sample_id, n from counts where n > 1
)

select * from final
