-- Distinct prompts of one split in a seeded pseudo-random order: the sha256 of
-- "<prompt_id>:<seed>" (hex), a standard hash, so the choice is the same on every machine and
-- every DuckDB version (DuckDB's own hash() is not stable across versions). Regeneration draws fresh train prompts
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
order by sha256(prompt_id || ':' || $seed::varchar), prompt_id
limit $n
