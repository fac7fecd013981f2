package postgres

import (
	"context"
	"math"
	"time"

	"github.com/gpuflow/gpuflow"
)

// refilled is the bucket's tokens now: what it held plus the refill since
// its last take ($3 tokens a second), at most its capacity $2.
const refilled = `LEAST($2::float8, r.tokens + GREATEST(EXTRACT(EPOCH FROM (now() - r.updated_at))::float8, 0) * $3::float8)`

// rateTakeSQL takes a token from key $1's bucket in one statement: a new
// bucket starts full ($2) less the token taken; an existing one is
// refilled, then loses a token if it has a whole one. The row lock of the
// upsert orders concurrent takes from every replica.
const rateTakeSQL = `INSERT INTO rate_limits AS r (key, tokens, updated_at, granted)
VALUES ($1, $2::float8 - 1, now(), true)
ON CONFLICT (key) DO UPDATE SET
	tokens = ` + refilled + ` - CASE WHEN ` + refilled + ` >= 1 THEN 1 ELSE 0 END,
	granted = ` + refilled + ` >= 1,
	updated_at = GREATEST(r.updated_at, now())
RETURNING tokens, granted`

// TakeRate takes one request from key's token bucket, which holds up to
// limit requests and refills limit per period, shared by every process on
// this database. It returns 0 when the request may go ahead, otherwise how
// long until one may. It returns EINVALID for an empty or overlong key or
// a limit or period that is not positive, and EUNAVAILABLE when the
// database is down.
func (db *DB) TakeRate(ctx context.Context, key string, limit int, period time.Duration) (time.Duration, error) {
	if key == "" || len(key) > 200 {
		return 0, gpuflow.Errorf(gpuflow.EINVALID, "a rate limit key must be 1 to 200 bytes")
	}
	if limit <= 0 || period <= 0 {
		return 0, gpuflow.Errorf(gpuflow.EINVALID, "a rate limit needs a positive limit and period")
	}
	rate := float64(limit) / period.Seconds() // tokens a second
	var (
		tokens  float64
		granted bool
	)
	if err := db.Pool.QueryRow(ctx, rateTakeSQL, key, limit, rate).Scan(&tokens, &granted); err != nil {
		return 0, translate(err, "take rate token "+key, "rate limit")
	}
	if granted {
		return 0, nil
	}
	wait := time.Duration(math.Ceil((1 - tokens) / rate * float64(time.Second)))
	return max(wait, time.Millisecond), nil
}
