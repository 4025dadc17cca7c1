-- Every human preference points at two existing samples of the same prompt.
with prefs as (
    select * from preferences
),

final as (
    select p.prompt_id, p.chosen_id, p.rejected_id
    from prefs as p
    left join samples as c on c.sample_id = p.chosen_id
    left join samples as r on r.sample_id = p.rejected_id
    where c.sample_id is null
       or r.sample_id is null
       or c.prompt_id <> p.prompt_id
       or r.prompt_id <> p.prompt_id
)

select * from final
