-- Distinct prompts of one split in a seeded pseudo-random order (hash of prompt_id and $seed),
-- so the choice is stable across reruns and machines. Regeneration draws fresh train prompts
-- ($split = 'train'); evaluation draws held-out ones ($split = 'eval', split off by prompt_id
-- in ingest before any training).
-- Params: $split, $n (at most this many), $seed.
with prompts as (
    select prompt_id, any_value(prompt) as prompt
    from samples
    where split = $split
    group by prompt_id
)

select prompt_id, prompt
from prompts
order by hash(prompt_id || ':' || $seed::varchar), prompt_id
limit $n
