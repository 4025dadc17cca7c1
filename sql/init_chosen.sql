-- The shared SFT start's training rows, MODPO's recipe: the human-preferred (chosen) response
-- of every preference pair whose prompt is in the training splits (a tie has no chosen side),
-- each response once, in a seeded order (sha256, stable across machines) so that $n takes a
-- reproducible sample.
-- Views: preferences (prompt_id, chosen_id, ..., tie), samples. Params: $splits, $n, $seed.
with chosen as (
    select distinct p.chosen_id as sample_id
    from preferences as p
    where not p.tie
),

rows as (
    select s.sample_id, s.prompt, s.response
    from chosen as c
    join samples as s using (sample_id)
    where list_contains($splits, s.split) and length(trim(s.response)) > 0
),

final as (
    select sample_id, prompt, response
    from rows
    order by sha256(sample_id || ':' || $seed::varchar), sample_id
    limit $n
)

select * from final
order by sample_id
