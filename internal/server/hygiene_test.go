package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRefusedLoginsWarnOncePerInterval: someone guessing passwords gets one
// warning per remote per interval in the log, not one per attempt.
func TestRefusedLoginsWarnOncePerInterval(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	srv := start(t, Config{Source: &fakeSource{}, AdminUser: "ops", AdminPassword: "s3cret", Log: log})
	for range 5 {
		if a := do(t, "GET", srv.private+"/indexes", []string{"ops", "guess"}); a.code != 401 {
			t.Fatalf("a wrong password: %d", a.code)
		}
	}
	if n := strings.Count(buf.String(), "request refused"); n != 1 {
		t.Errorf("%d warnings for 5 refusals within %v, want 1:\n%s", n, refusalWarnEvery, &buf)
	}
}

func TestWarnLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newWarnLimiter(10*time.Second, func() time.Time { return now })
	type step struct {
		after      time.Duration
		key        string
		warn       bool
		suppressed int
	}
	for i, s := range []step{
		{0, "10.0.0.1", true, 0},
		{time.Second, "10.0.0.1", false, 0},
		{time.Second, "10.0.0.1", false, 0},
		{0, "10.0.0.2", true, 0}, // another remote has its own interval
		{8 * time.Second, "10.0.0.1", true, 2},
		{time.Second, "10.0.0.1", false, 0},
		{10 * time.Second, "10.0.0.1", true, 1},
		{10 * time.Second, "10.0.0.1", true, 0},
	} {
		now = now.Add(s.after)
		warn, suppressed := l.allow(s.key)
		if warn != s.warn || suppressed != s.suppressed {
			t.Errorf("step %d (%s at %v): allow = %v, %d; want %v, %d", i, s.key, now.Unix(), warn, suppressed, s.warn, s.suppressed)
		}
	}
}

// TestWarnLimiterBounded: a flood from ever new remotes keeps the memory
// bounded; remotes whose interval passed are forgotten first.
func TestWarnLimiterBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newWarnLimiter(10*time.Second, func() time.Time { return now })
	for i := range 3 * warnLimiterKeys {
		if i == warnLimiterKeys {
			now = now.Add(time.Minute)
		}
		if warn, _ := l.allow(fmt.Sprint("remote-", i)); !warn {
			t.Fatalf("a first refusal from remote %d was not warned", i)
		}
	}
	if len(l.keys) > warnLimiterKeys {
		t.Errorf("%d remotes remembered, bound %d", len(l.keys), warnLimiterKeys)
	}
}

// TestConnectionTimeouts: both surfaces drop connections that send their
// headers slowly or sit idle.
func TestConnectionTimeouts(t *testing.T) {
	s, err := Listen(Config{Source: &fakeSource{}, PublicAddress: "127.0.0.1:0", PrivateAddress: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.publicLn.Close()
	defer s.privateLn.Close()
	for name, srv := range map[string]*http.Server{"public": s.public, "private": s.private} {
		if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 {
			t.Errorf("%s surface: ReadHeaderTimeout %v, IdleTimeout %v", name, srv.ReadHeaderTimeout, srv.IdleTimeout)
		}
	}
}
