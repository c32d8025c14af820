// Package stripebench measures payonce-mock's Stripe dialect beside
// stripe-mock (github.com/stripe/stripe-mock), in the same run and under
// the same load. It holds no code of its own, only BenchmarkStripeDialect,
// which is not part of CI's go test (benchmarks only run with -bench):
//
//	go test -run '^$' -bench BenchmarkStripeDialect -benchtime=20000x -count=5 ./mock/stripebench/ | tee new.txt
//	benchstat -col /server new.txt # go install golang.org/x/perf/cmd/benchstat@latest
//
// Both servers run as child processes on free 127.0.0.1 ports, with their
// default flags, their per-request logs going to files: stripe-mock
// v0.203.0 with -http-addr, and payonce-mock, built from this tree's
// cmd/payonce-mock, with -addr. The benchmark builds them itself: stripe-mock
// with go install into os.UserCacheDir()/payonce/stripebench, once (the
// module proxy must be reachable the first time), and payonce-mock with go
// build, once per go test. PAYONCE_STRIPE_MOCK and PAYONCE_MOCK name
// prebuilt binaries instead. When stripe-mock can be neither found nor
// built, the benchmark skips and says how to provide it.
//
// Each load is sent by 32 client goroutines, each on a keep-alive
// connection of its own, b.N requests in all, to one server after the
// other. A goroutine writes each request whole, prebuilt but for its key,
// and reads the answer with net/http's parser ([net/http.ReadResponse]),
// much as wrk does: an [net/http.Transport] would spend more CPU per
// request than payonce-mock does, on its two goroutines per connection and
// the hand-offs between them, and that CPU comes out of the server's on a
// machine with few cores. The flag -stripebench.client=transport, after
// the package's path, sends the loads through an http.Client instead, to
// see what a Go program would:
//
//	go test ./mock/stripebench/ -run '^$' -bench BenchmarkStripeDialect -benchtime=20000x -count=5 -stripebench.client=transport
//
// testdata/new_keys.lua sends the new_keys load with wrk, a load
// generator written in C, to check the benchmark's figures with a client
// that has nothing in common with it; its comment tells how.
//
//   - new_keys: POST /v1/charges with the form body
//     amount=2000&currency=usd&source=tok_visa and a fresh Idempotency-Key
//     on every request;
//   - replays: the same request, each client sending one key of its own
//     again and again. Each key's first request, which executes, is sent
//     before the timer starts, so every timed request is a replay.
//
// Every response must be 200. payonce-mock's must also say whether it is a
// replay (Idempotent-Replayed: true) as the load expects; stripe-mock
// replays nothing, so its answer to a replay is a new charge. One
// payonce-mock serves every repetition, and keeps every key: its memory
// store, bounded to 256 MiB, holds about 140,000 of these charges, past
// which new keys get 503 idempotency_store_full, so keep -benchtime times
// -count below that.
//
// Each sub-benchmark, such as new_keys/server=stripe-mock and
// new_keys/server=payonce-mock, reports req/s and, on Linux, the CPU time
// the server process spent per request (server-cpu-ns/req, from /proc, in
// 10 ms ticks: give it thousands of requests), and that of the clients,
// this process (client-cpu-ns/req). The server's CPU time depends less on
// the clients, and on whatever else shares the machine, than req/s does.
// Each payonce-mock repetition logs both ratios to stripe-mock: for that
// repetition, and for the medians of the repetitions so far.
//
// A payonce-mock without the Stripe dialect (one built before it, given
// by PAYONCE_MOCK) refuses form bodies with 400 invalid_content_type. The
// payonce-mock sub-benchmarks then skip, and the same loads are sent in
// payonce's JSON dialect instead, as new_keys/server=payonce-mock-json and
// replays/server=payonce-mock-json, each logging that it is an interim
// figure, not the Stripe dialect's.
//
// The servers and the clients share the machine's cores, so the clients'
// own CPU time is part of what bounds req/s: with few cores, the req/s
// ratio is narrower than the ratio of server CPU time. The samples of one
// server are taken one after the other (go test repeats each sub-benchmark
// -count times before the next), so background load on a shared machine
// can favour either; several runs with -count=1 interleave them.
package stripebench
