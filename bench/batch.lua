-- wrk script: POST /v1/ledger/transfers/batch with COFFER_BATCH items, each with a unique key.
local accounts = {}
local token = os.getenv("COFFER_TOKEN")
local run = os.getenv("COFFER_RUN") or "0"
local size = tonumber(os.getenv("COFFER_BATCH") or "1000")
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid or 0
  for line in io.lines(os.getenv("COFFER_ACCOUNTS")) do
    table.insert(accounts, line)
  end
  math.randomseed(os.time() + thread_id * 104729)
end

function request()
  local items = {}
  local n = #accounts
  for k = 1, size do
    counter = counter + 1
    local i = math.random(n)
    local j = math.random(n - 1)
    if j >= i then j = j + 1 end
    items[k] = string.format(
      '{"debit_account_id":"%s","credit_account_id":"%s","amount":%d,"currency":"USD","code":"p2p","idempotency_key":"b-%s-%d-%d"}',
      accounts[i], accounts[j], math.random(1, 100), run, thread_id, counter)
  end
  local body = '{"transfers":[' .. table.concat(items, ",") .. ']}'
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  return wrk.format("POST", "/v1/ledger/transfers/batch", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("wrk_result requests=%d duration_us=%d non2xx=%d errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
