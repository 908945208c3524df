package engine

// The allow-lists. A function not named here is refused; the lists are short on purpose and
// grow only with functions that cannot read files, reach the network, depend on hidden state,
// produce randomness, or raise errors chosen by the query.

// aggregates are the aggregate functions a threshold query may use.
var aggregates = map[string]bool{
	"count": true, "count_star": true, "sum": true, "avg": true, "mean": true,
	"min": true, "max": true, "median": true, "quantile_cont": true, "quantile_disc": true,
	"stddev": true, "stddev_samp": true, "stddev_pop": true,
	"variance": true, "var_samp": true, "var_pop": true,
	"bool_and": true, "bool_or": true, "corr": true, "covar_samp": true, "covar_pop": true,
}

// scalars are the scalar functions and operators a query may use. Operators appear in
// DuckDB's tree under their symbol (LIKE is "~~").
var scalars = map[string]bool{
	"+": true, "-": true, "*": true, "/": true, "//": true, "%": true, "^": true, "**": true, "||": true,
	"~~": true, "!~~": true, "~~*": true, "!~~*": true,
	"abs": true, "sign": true, "round": true, "round_even": true, "floor": true, "ceil": true, "ceiling": true,
	"trunc": true, "sqrt": true, "cbrt": true, "exp": true, "ln": true, "log": true, "log2": true, "log10": true,
	"pow": true, "power": true, "greatest": true, "least": true, "nullif": true, "ifnull": true,
	"lower": true, "upper": true, "lcase": true, "ucase": true, "length": true, "strlen": true,
	"substring": true, "substr": true, "left": true, "right": true, "trim": true, "ltrim": true, "rtrim": true,
	"concat": true, "starts_with": true, "ends_with": true, "suffix": true, "prefix": true, "contains": true,
	"replace": true, "lpad": true, "rpad": true,
	"year": true, "month": true, "day": true, "quarter": true, "week": true, "weekofyear": true,
	"dayofweek": true, "dayofyear": true, "isodow": true, "isoyear": true, "hour": true, "minute": true,
	"date_part": true, "datepart": true, "date_trunc": true, "datetrunc": true, "date_diff": true,
	"datediff": true, "date_sub": true, "datesub": true, "make_date": true, "last_day": true,
	"strftime": true, "monthname": true, "dayname": true, "time_bucket": true,
}

// forbiddenWhy explains the refusal of functions a vendor is likely to try.
var forbiddenWhy = map[string]string{
	"random": "randomness is not allowed", "setseed": "randomness is not allowed",
	"uuid": "randomness is not allowed", "gen_random_uuid": "randomness is not allowed",
	"error": "queries may not raise errors", "getvariable": "session state is not available",
	"current_setting": "session state is not available", "now": "the clock is not available",
	"current_timestamp": "the clock is not available", "get_current_timestamp": "the clock is not available",
}

// castTypes are the types a CAST may produce.
var castTypes = map[string]bool{
	"BOOLEAN": true, "TINYINT": true, "SMALLINT": true, "INTEGER": true, "BIGINT": true, "HUGEINT": true,
	"UTINYINT": true, "USMALLINT": true, "UINTEGER": true, "UBIGINT": true,
	"FLOAT": true, "DOUBLE": true, "DECIMAL": true, "VARCHAR": true, "DATE": true, "TIMESTAMP": true,
}
