package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/pgstore"
	"github.com/payonce/payonce/idempotency/redisstore"
)

// storeSetupTimeout bounds connecting to a -store server and creating its
// schema at startup, so that an unreachable server is an error, not a hang.
const storeSetupTimeout = 15 * time.Second

// Janitor settings for a PostgreSQL store: how often expired rows are
// deleted, and how many per statement.
const (
	janitorInterval = time.Minute
	janitorBatch    = 1000
)

// storeConfig is what the -store flags ask for.
type storeConfig struct {
	url    string // postgres://, postgresql://, redis:// or rediss://; "" for memory
	table  string // -store-table, PostgreSQL only
	prefix string // -store-prefix, Redis only
}

// sharedStore is an open -store and what closes it.
type sharedStore struct {
	store idempotency.Store
	desc  string // the URL with its secrets redacted, for the logs
	close func()
}

// openStore connects to the store that cfg names. It returns nil, and no
// error, when cfg names none. Its errors never hold the URL's secrets.
func openStore(ctx context.Context, cfg storeConfig, logger *slog.Logger) (*sharedStore, error) {
	if cfg.url == "" {
		if cfg.table != "" || cfg.prefix != "" {
			return nil, errors.New("-store-table and -store-prefix need a -store")
		}
		return nil, nil
	}
	u, err := url.Parse(cfg.url)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the url.Error would repeat the whole URL, password included
		}
		return nil, fmt.Errorf("bad -store URL: %s", redact(err.Error(), cfg.url))
	}
	desc := redactURL(u)
	ctx, cancel := context.WithTimeout(ctx, storeSetupTimeout)
	defer cancel()

	var s *sharedStore
	switch strings.ToLower(u.Scheme) {
	case "postgres", "postgresql":
		if cfg.prefix != "" {
			return nil, errors.New("-store-prefix is for a Redis -store; a PostgreSQL one takes -store-table")
		}
		s, err = openPostgres(ctx, cfg, logger)
	case "redis", "rediss":
		if cfg.table != "" {
			return nil, errors.New("-store-table is for a PostgreSQL -store; a Redis one takes -store-prefix")
		}
		s, err = openRedis(ctx, cfg)
	case "":
		return nil, errors.New("bad -store: want a postgres://, postgresql://, redis:// or rediss:// URL")
	default:
		return nil, fmt.Errorf("bad -store: unknown scheme %q: want postgres://, postgresql://, redis:// or rediss://",
			u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("-store %s: %s", desc, redact(err.Error(), cfg.url))
	}
	s.desc = desc
	return s, nil
}

func openPostgres(ctx context.Context, cfg storeConfig, logger *slog.Logger) (*sharedStore, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.url)
	if err != nil {
		return nil, err
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		// pgxpool dials on a context of its own: without a timeout a dial
		// into a network that drops packets holds a pool slot for minutes
		// (see pgstore's doc). A URL's connect_timeout still wins.
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	var opts []pgstore.Option
	if cfg.table != "" {
		opts = append(opts, pgstore.WithTable(cfg.table))
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	store, err := pgstore.New(pool, opts...)
	if err == nil {
		err = store.CreateSchema(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	// Expired rows stay until deleted: a janitor deletes them in the
	// background until the store is closed.
	jctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		store.RunJanitor(jctx, janitorInterval, janitorBatch, func(err error) {
			logger.Warn("deleting expired idempotency records", "err", redact(err.Error(), cfg.url))
		})
	}()
	return &sharedStore{store: store, close: func() {
		stop()
		wg.Wait()
		pool.Close()
	}}, nil
}

func openRedis(ctx context.Context, cfg storeConfig) (*sharedStore, error) {
	ropts, err := redis.ParseURL(cfg.url)
	if err != nil {
		return nil, err
	}
	// The middleware gives every store call a deadline within the lease;
	// go-redis applies it to the socket only when told to, and ParseURL
	// cannot say so.
	ropts.ContextTimeoutEnabled = true
	var opts []redisstore.Option
	if cfg.prefix != "" {
		opts = append(opts, redisstore.WithPrefix(cfg.prefix))
	}
	client := redis.NewClient(ropts)
	store, err := redisstore.New(client, opts...)
	if err == nil {
		err = client.Ping(ctx).Err() // fail now, not on the first request
	}
	if err != nil {
		client.Close()
		return nil, err
	}
	return &sharedStore{store: store, close: func() { client.Close() }}, nil
}

// redactURL returns u as text with its password, and any query parameter
// whose name mentions a password, replaced by "xxxxx".
func redactURL(u *url.URL) string {
	r := *u
	if q := r.Query(); len(q) > 0 {
		changed := false
		for name := range q {
			if strings.Contains(strings.ToLower(name), "password") {
				q.Set(name, "xxxxx")
				changed = true
			}
		}
		if changed {
			r.RawQuery = q.Encode()
		}
	}
	return r.Redacted()
}

// redact removes from msg any secret that the URL raw holds, should a
// library have quoted it.
func redact(msg, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable: the text between "://" and the last "@" may be
		// userinfo; take out all of it.
		if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i+3 {
			msg = strings.ReplaceAll(msg, raw[i+3:j], "xxxxx")
		}
		return msg
	}
	var secrets []string
	if pw, ok := u.User.Password(); ok && pw != "" {
		secrets = append(secrets, pw, url.PathEscape(pw), url.QueryEscape(pw))
	}
	for name, vals := range u.Query() {
		if strings.Contains(strings.ToLower(name), "password") {
			for _, v := range vals {
				if v != "" {
					secrets = append(secrets, v, url.QueryEscape(v))
				}
			}
		}
	}
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}
