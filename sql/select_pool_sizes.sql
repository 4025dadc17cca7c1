-- Rows per Pareto layer, so the stage can take the first L layers and grow them layer by layer
-- until the pool holds its target number of rows (pool_factor × k × |grid|, or pool_rows).
select layer, count(*) as n
from layers
group by layer
order by layer
