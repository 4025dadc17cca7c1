-- Held-out prompts that appear in training data: must return no rows.
-- Views: eval_ids (prompt_id) registered by the stage; training_ids (prompt_id), the prompt ids
-- of every training table the evaluation reads, registered by the stage as one table.
select e.prompt_id, t.source
from eval_ids as e
join training_ids as t using (prompt_id)
order by e.prompt_id, t.source
limit 5
