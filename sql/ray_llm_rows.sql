-- The rows the ray.data.llm engine returned (Parquet files its workers wrote, any order), in
-- part and row order, so the driver can write them out as one directory per part for the
-- workers that finish (decode, score, write) each part.
select part, "row", generated_tokens
from read_parquet($files)
order by part, "row"
