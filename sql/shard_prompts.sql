-- The distinct prompts behind a set of shards (PAMA's online prompts), in a fixed order.
-- Views: shards (prompt, ...).
select distinct prompt
from shards
order by prompt
