-- Preference pairs for the pairwise methods (MODPO, RACO): every two scored train responses to
-- the same prompt, as (a, b) with a's sample_id < b's, the per-objective score margins
-- score(a) − score(b) in objective order, and the human relation where the dataset had one
-- (+1: a was chosen over b, −1: b over a, 0: no human label, or a labelled tie).
-- Views: samples, layers (sample_id, raw, norm lists), preferences, selection.
-- Params: $scope ('selected': prompts with a response in some round-1 shard, the data the SFT
-- shards came from; 'all': every train prompt).
with scored as (
    select s.sample_id, s.prompt_id, l.raw, l.norm
    from samples as s
    join layers as l using (sample_id)
    where s.split = 'train'
),

scoped_prompts as (
    select distinct s.prompt_id
    from selection as sel
    join samples as s using (sample_id)
),

pool as (
    select *
    from scored
    where $scope = 'all' or prompt_id in (select prompt_id from scoped_prompts)
),

pairs as (
    select
        a.prompt_id,
        a.sample_id as a_id,
        b.sample_id as b_id,
        list_transform(list_zip(a.raw, b.raw), lambda p: p[1] - p[2]) as margin,
        list_transform(list_zip(a.norm, b.norm), lambda p: p[1] - p[2]) as norm_margin
    from pool as a
    join pool as b on a.prompt_id = b.prompt_id and a.sample_id < b.sample_id
),

human as (
    select chosen_id, rejected_id from preferences where not tie
)

select
    p.prompt_id,
    p.a_id,
    p.b_id,
    p.margin,
    p.norm_margin,
    case
        when exists (select 1 from human as h where h.chosen_id = p.a_id and h.rejected_id = p.b_id)
            then 1
        when exists (select 1 from human as h where h.chosen_id = p.b_id and h.rejected_id = p.a_id)
            then -1
        else 0
    end as human
from pairs as p
order by p.prompt_id, p.a_id, p.b_id
