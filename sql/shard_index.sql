-- One row per preference of a selection: its weights, the hash that identifies its shard's
-- rows (what the SFT stages key their adapters on) and its row count.
-- Views: selection (pref_id, weights, selection_hash, ...).
select
    pref_id,
    any_value(weights) as weights,
    any_value(selection_hash) as selection_hash,
    count(*) as rows
from selection
group by pref_id
order by pref_id
