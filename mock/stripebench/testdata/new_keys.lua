-- wrk's version of BenchmarkStripeDialect's new_keys load, to check its
-- figures with a load generator written in C. Each request is
-- POST /v1/charges with the same form body and a key never sent before:
-- the run's start time, wrk's thread and a count. Start the two servers
-- (payonce-mock -addr 127.0.0.1:8420, stripe-mock -http-addr 127.0.0.1:12111)
-- and send each the same load, one after the other:
--
--   wrk -t2 -c32 -d4s -s mock/stripebench/testdata/new_keys.lua http://127.0.0.1:8420
--   wrk -t2 -c32 -d4s -s mock/stripebench/testdata/new_keys.lua http://127.0.0.1:12111
--
-- wrk counts answers other than 2xx and 3xx as "Non-2xx or 3xx responses":
-- a run that reports any measured something else. Keep runs short, and
-- restart payonce-mock between them: its memory store, bounded to 256 MiB,
-- holds about 140,000 of these charges, and once it is full every new key
-- gets 503 idempotency_store_full until records expire.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local headers = {
  ["Authorization"] = "Bearer sk_test_stripebench",
  ["Content-Type"] = "application/x-www-form-urlencoded",
}
local body = "amount=2000&currency=usd&source=tok_visa"
local prefix
local n = 0

function init(args)
  prefix = "wrk-" .. os.time() .. "-" .. id .. "-"
end

function request()
  n = n + 1
  headers["Idempotency-Key"] = prefix .. n
  return wrk.format("POST", "/v1/charges", headers, body)
end
