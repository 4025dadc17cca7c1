-- Fresh prompts for round two: $n distinct train prompts in a seeded pseudo-random order
-- (hash of prompt_id and $seed), so the choice is stable across reruns and machines.
with prompts as (
    select prompt_id, any_value(prompt) as prompt
    from samples
    where split = 'train'
    group by prompt_id
)

select prompt_id, prompt
from prompts
order by hash(prompt_id || ':' || $seed::varchar), prompt_id
limit $n
