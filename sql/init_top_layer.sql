-- The shared SFT start's training rows from the scores alone: every response of the first
-- Pareto layer of the training pool (for data without human preferences), in a seeded order
-- (sha256, stable across machines) so that $n takes a reproducible sample.
-- Views: layers (sample_id, layer, ...), samples. Params: $splits, $n, $seed.
with rows as (
    select s.sample_id, s.prompt, s.response
    from layers as l
    join samples as s using (sample_id)
    where l.layer = 1 and list_contains($splits, s.split) and length(trim(s.response)) > 0
),

final as (
    select sample_id, prompt, response
    from rows
    order by sha256(sample_id || ':' || $seed::varchar), sample_id
    limit $n
)

select * from final
order by sample_id
