"""The limits a query must stay within, checked before any work is done (``docs/query.md``).

>>> MAX_IN_LIST <= MAX_PREDICATES
True
"""

#: Longest SQL text accepted, in characters (an IN list of 1,000 codes fits easily).
MAX_SQL_LENGTH = 100_000
#: Most literals in one ``IN (...)`` list.
MAX_IN_LIST = 1_000
#: Deepest nesting of expressions. Parentheses and a chain of the same operator
#: (``a AND b AND c``) count once; ``NOT``, a switch between AND and OR, and each function or
#: comparison add a level.
MAX_EXPRESSION_DEPTH = 32
#: Most comparisons in WHERE (each literal of an IN list and each side of a BETWEEN counts).
MAX_PREDICATES = 1_000
#: Most items in the SELECT list (group-by keys and aggregates).
MAX_SELECT_ITEMS = 32
#: Most GROUP BY keys.
MAX_GROUP_KEYS = 4
#: Largest LIMIT.
MAX_LIMIT = 1_000_000_000
#: Longest output name (alias), in characters.
MAX_NAME_LENGTH = 128
#: Largest number of candidates offered to the quantile mechanism.
MAX_QUANTILE_CANDIDATES = 1024
#: Largest number of public group keys (the product of the key columns' sizes).
MAX_PUBLIC_GROUPS = 100_000
