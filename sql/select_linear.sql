-- The $n pooled rows with the highest linear scalarisation w·r̃ per preference, as the key
-- 1 − w·r̃ (smallest first, rounded to a multiple of 1/$scale like the ray key), so ray and linear
-- selection share the stage's tie handling.
-- Views: layers (sample_id, layer, norm), prefs (pref_id, w) registered by the stage.
-- Params: $max_layer, $n, $only, $scale (as in select_ray.sql).
with pool as (
    select sample_id, norm
    from layers
    where layer <= $max_layer
),

keyed as (
    select
        p.pref_id,
        pool.sample_id,
        round((1 - list_inner_product(pool.norm, p.w)) * $scale) / $scale as key
    from pool
    cross join prefs as p
    where list_contains($only, p.pref_id)
)

select pref_id, arg_min(sample_id, key, $n) as sample_ids, min(key, $n) as keys
from keyed
group by pref_id
