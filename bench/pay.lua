-- wrk script: merchant QR payments, end to end. Each request is a random customer (their own
-- session) paying the merchant's static code a random amount with a fresh Idempotency-Key:
-- session check, strict decoding, EMVCo parse and CRC, merchant and fee lookup, the operation
-- row, the ledger transfer with its fee leg, the outcome row. Environment: COFFER_PAYERS (lines
-- "<token> <payload>", from setup_payments.py), COFFER_RUN (keeps keys unique across runs).
local payers = {}
local run = os.getenv("COFFER_RUN") or "0"
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid or 0
  for line in io.lines(os.getenv("COFFER_PAYERS")) do
    local token, payload = line:match("^(%S+) (.+)$")
    table.insert(payers, {token = token, payload = payload})
  end
  math.randomseed(os.time() + thread_id * 7919)
end

function request()
  local p = payers[math.random(#payers)]
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json",
                   ["Authorization"] = "Bearer " .. p.token,
                   ["Idempotency-Key"] = string.format("q-%s-%d-%d", run, thread_id, counter)}
  return wrk.format("POST", "/v1/me/payments", headers,
                    string.format('{"payload":"%s","amount_minor":%d}', p.payload,
                                  math.random(100, 5000)))
end

function done(summary, latency, requests)
  io.write(string.format("wrk_result requests=%d duration_us=%d non2xx=%d errors=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
