-- Training pairs for a reward head: (prompt, chosen response, rejected response) from the
-- human preference relation, train split only (held-out prompts never train a reward); ties
-- have no winner and train nothing.
-- Params: $sources (preference sources to use; empty list = all).
select
    p.prompt_id,
    c.prompt,
    c.response as chosen,
    r.response as rejected,
    p.source
from preferences as p
join samples as c on c.sample_id = p.chosen_id
join samples as r on r.sample_id = p.rejected_id
where p.split = 'train'
    and not p.tie
    and (len($sources) = 0 or list_contains($sources, p.source))
order by p.prompt_id, p.chosen_id, p.rejected_id
