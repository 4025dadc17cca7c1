-- Everything a shard row carries: the text (prompt/completion for TRL's SFTTrainer, and the
-- response under its sample-table name), the raw and normalised scores, layer and distance.
-- Views: picked (pref_id, rank, sample_id, distance) registered by the stage, layers, samples.
select
    p.pref_id,
    p.rank,
    p.sample_id,
    s.prompt_id,
    s.source,
    s.prompt,
    s.response as completion,
    s.response,
    l.layer,
    p.distance,
    l.raw,
    l.norm
from picked as p
join layers as l using (sample_id)
join samples as s using (sample_id)
order by p.pref_id, p.rank
