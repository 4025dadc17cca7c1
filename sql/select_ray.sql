-- The $n pooled rows nearest each preference ray (docs/algorithms.md, "Selection geometry"),
-- smallest key first. key = squared perpendicular distance from r̃ to the ray from the ideal
-- point 1 toward w: z = r̃ − 1, v = (w − 1)/‖w − 1‖, t = z·v = r̃·v − Σv; key = ‖z‖² − t² if
-- t ≥ 0 else ‖z‖², rounded to a multiple of 1/$scale (1e-12) so that geometrically equal
-- distances compare equal (the float error of ‖z‖² − t² is ~1e-16, far below that step) and
-- ties fall to sample_id.
-- Views: layers (sample_id, layer, norm), prefs (pref_id, v, sv = Σv) registered by the stage.
-- Params: $max_layer (pool = layers 1..max_layer), $n (rows kept per preference), $only
-- (pref_ids to compute), $scale (rounding). Ties at the cut are resolved by the stage, which
-- widens $n for any preference whose n-th key equals its k-th, then orders by (key, sample_id).
with pool as (
    select
        sample_id,
        norm,
        list_sum(list_transform(norm, lambda x: (x - 1) * (x - 1))) as zz
    from layers
    where layer <= $max_layer
),

projected as (
    select
        p.pref_id,
        pool.sample_id,
        pool.zz,
        list_inner_product(pool.norm, p.v) - p.sv as t
    from pool
    cross join prefs as p
    where list_contains($only, p.pref_id)
),

keyed as (
    select
        pref_id,
        sample_id,
        round((case when t >= 0 then greatest(zz - t * t, 0) else zz end) * $scale) / $scale as key
    from projected
)

select pref_id, arg_min(sample_id, key, $n) as sample_ids, min(key, $n) as keys
from keyed
group by pref_id
