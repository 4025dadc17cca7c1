-- Held-out prompts for evaluation: split 'eval' (chosen by prompt_id in ingest, before any
-- training), in a seeded pseudo-random order, at most $n of them.
with prompts as (
    select prompt_id, any_value(prompt) as prompt
    from samples
    where split = 'eval'
    group by prompt_id
)

select prompt_id, prompt
from prompts
order by hash(prompt_id || ':' || $seed::varchar), prompt_id
limit $n
