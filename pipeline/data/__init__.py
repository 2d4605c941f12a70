"""Tables in, encoded training data out; pyarrow and numpy, never torch.

`table` opens the files a spec names (`csv_table`, `parquet_table`: one `Table` shape; `cells`: what they
share), `schema` infers the columns and the task and settles the target, `encoding` turns record batches
into raw feature matrices and statistics, `load` picks `dataset` (in memory) or `streaming` (read again
each pass) by the `memory` budget; `job` is the little of a multi-process job the data layer needs.
"""
