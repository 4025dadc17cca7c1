-- Rows per Pareto layer, so the stage can take the first L layers and grow them until the pool
-- holds at least k rows.
select layer, count(*) as n
from layers
group by layer
order by layer
