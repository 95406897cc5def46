-- wrk script: transfers with unique idempotency keys between random funded accounts.
-- Environment: COFFER_TOKEN (an admin's session token, as setup_accounts.py writes it; the
-- operator token is refused on the ledger), COFFER_ACCOUNTS (one account id per line), COFFER_RUN
-- (a run id, so keys never repeat across runs), COFFER_HOT_PERCENT (share of transfers that
-- credit the first account: a hot merchant), COFFER_BATCH (0: single POSTs with an
-- Idempotency-Key header; N > 0: POST /v1/ledger/transfers/batch with N items per request).
local accounts = {}
local token = os.getenv("COFFER_TOKEN")
if token == nil or token == "" then
  error("COFFER_TOKEN is not set (the admin session token written by setup_accounts.py)")
end
local run = os.getenv("COFFER_RUN") or "0"
local hot = tonumber(os.getenv("COFFER_HOT_PERCENT") or "0")
local batch = tonumber(os.getenv("COFFER_BATCH") or "0")
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
  math.randomseed(os.time() + thread_id * 7919)
end

-- One transfer's JSON; key is nil for a single POST (the key goes in the header).
local function transfer(key)
  local n = #accounts
  local i = math.random(n)
  local j = math.random(n - 1)
  if j >= i then j = j + 1 end
  if hot > 0 and math.random(100) <= hot then
    j = 1
    if i == 1 then i = 2 end
  end
  local item_key = key and string.format(',"idempotency_key":"%s"', key) or ""
  return string.format(
    '{"debit_account_id":"%s","credit_account_id":"%s","amount":%d,"currency":"USD","code":"p2p"%s}',
    accounts[i], accounts[j], math.random(1, 100), item_key)
end

local function next_key(prefix)
  counter = counter + 1
  return string.format("%s-%s-%d-%d", prefix, run, thread_id, counter)
end

function request()
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  if batch > 0 then
    local items = {}
    for k = 1, batch do items[k] = transfer(next_key("b")) end
    return wrk.format("POST", "/v1/ledger/transfers/batch", headers,
                      '{"transfers":[' .. table.concat(items, ",") .. ']}')
  end
  headers["Idempotency-Key"] = next_key("w")
  return wrk.format("POST", "/v1/ledger/transfers", headers, transfer(nil))
end

function done(summary, latency, requests)
  io.write(string.format("wrk_result requests=%d duration_us=%d non2xx=%d errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
