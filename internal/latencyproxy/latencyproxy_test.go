package latencyproxy

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/internal/testenv"
)

// through connects to the database of dbURL through a proxy with the given
// one-way delay.
func through(t *testing.T, ctx context.Context, dbURL string, delay time.Duration) (*Proxy, *pgx.Conn) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(ctx, "127.0.0.1:0", u.Host, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !closes(p) {
			t.Error("Close did not return within 10 s")
		}
	})
	u.Host = p.Addr()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connecting through the proxy: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return p, conn
}

// closes reports whether Close returns within 10 s.
func closes(p *Proxy) bool {
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// fastest is the quickest of a few SELECT 1 round trips, each checked for
// its answer: the least the proxy adds, whatever else the machine runs.
func fastest(t *testing.T, ctx context.Context, conn *pgx.Conn) time.Duration {
	t.Helper()
	best := time.Hour
	for range 5 {
		start := time.Now()
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("SELECT 1 through the proxy: %v", err)
		}
		best = min(best, time.Since(start))
		if one != 1 {
			t.Fatalf("SELECT 1 through the proxy answered %d", one)
		}
	}
	return best
}

// A round trip through the proxy costs at least twice the one-way delay
// and still answers right; with no delay the same round trip is faster
// than that, so the time is the proxy's and not the database's.
func TestRoundTripCostsTwiceTheDelay(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const delay = 40 * time.Millisecond

	_, plain := through(t, ctx, db, 0)
	undelayed := fastest(t, ctx, plain)
	_, slow := through(t, ctx, db, delay)
	delayed := fastest(t, ctx, slow)
	t.Logf("SELECT 1: %s without delay, %s with %s each way", undelayed, delayed, delay)
	if delayed < 2*delay {
		t.Errorf("a round trip through the proxy took %s, less than twice the %s delay", delayed, delay)
	}
	if undelayed >= 2*delay {
		t.Errorf("without delay the fastest round trip took %s, not less than the %s a delayed one costs", undelayed, 2*delay)
	}
}

// Each query a client sends and waits for counts as one request.
func TestRequestsCountRoundTrips(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, conn := through(t, ctx, db, 0)
	var one int
	// The first run of a statement prepares it: a round trip of its own.
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	before := p.Requests()
	for range 10 {
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.Requests() - before; got != 10 {
		t.Errorf("10 queries counted as %d requests", got)
	}
}

// An answer far larger than one read arrives whole and in order: the
// chunks of a direction are delayed, never reordered.
func TestLargeAnswerArrivesInOrder(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, conn := through(t, ctx, db, 5*time.Millisecond)
	// About 5 MB of text, whose md5 Postgres computes on its side.
	const q = `SELECT string_agg(lpad(i::text, 10, '0'), ',' ORDER BY i) FROM generate_series(1, 500000) i`
	var text, want string
	if err := conn.QueryRow(ctx, q).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT md5(("+q+"))").Scan(&want); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := conn.QueryRow(ctx, "SELECT md5($1::text)", text).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if len(text) != 500000*11-1 || got != want {
		t.Fatalf("the answer through the proxy is %d bytes with md5 %s; Postgres has md5 %s", len(text), got, want)
	}
}

// Cancelling the context closes the open connections and stops the
// listener; Close then returns once every goroutine ended.
func TestCancelClosesConnections(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pctx, stop := context.WithCancel(ctx)
	p, conn := through(t, pctx, db, time.Millisecond)
	fastest(t, ctx, conn)
	stop()
	if !closes(p) {
		t.Fatal("Close did not return within 10 s of the cancel")
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err == nil {
		t.Fatal("a query on a connection of a cancelled proxy succeeded")
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("the cancelled proxy still accepts connections")
	}
}

func TestNegativeDelayIsRefused(t *testing.T) {
	if _, err := Start(context.Background(), "127.0.0.1:0", "127.0.0.1:1", -time.Millisecond); err == nil {
		t.Fatal("a negative delay was accepted")
	}
}
