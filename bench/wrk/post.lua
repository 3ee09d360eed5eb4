-- wrk script: send one fixed request (method, JSON body, headers) and print a JSON summary.
--
--   WRK_BODY_FILE=body.json WRK_HEADERS=$'x-mock-chunks: 20\nauthorization: Bearer x' \
--     wrk -t1 -c64 -d10s --latency -s bench/wrk/post.lua URL
--   wrk ... -s bench/wrk/post.lua URL -- body.json 'x-mock-chunks: 20'   (same, as script args)
--
-- Environment: WRK_BODY_FILE (path) or WRK_BODY (literal), WRK_METHOD (default POST),
-- WRK_HEADERS (newline-separated "K: V"). done() prints one line starting with "WRK_JSON "
-- so bench/run.py can find it among wrk's own report. "non2xx" is wrk's status error
-- count, which counts responses with status > 399 (wrk has no 3xx bucket of its own).

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open body file " .. path)
  local data = f:read("*a")
  f:close()
  return data
end

local function add_header(line)
  local k, v = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if k then wrk.headers[k] = v end
end

-- Evaluated in every Lua state wrk makes (one per thread plus the main one), so the
-- request is fixed before the first connection opens.
wrk.method = os.getenv("WRK_METHOD") or "POST"
if os.getenv("WRK_BODY_FILE") then
  wrk.body = read_file(os.getenv("WRK_BODY_FILE"))
elseif os.getenv("WRK_BODY") then
  wrk.body = os.getenv("WRK_BODY")
end
wrk.headers["Content-Type"] = "application/json"
for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do add_header(line) end

local req = nil

function init(args)
  if args[1] and args[1] ~= "" then wrk.body = read_file(args[1]) end
  for i = 2, #args do add_header(args[i]) end
  -- formatting once per thread: request() then only returns a string
  req = wrk.format()
end

function request()
  return req
end

local function ms(us) return string.format("%.4f", us / 1000.0) end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  local parts = {
    '"tool":"wrk"',
    string.format('"duration_s":%.3f', secs),
    string.format('"requests":%d', summary.requests),
    string.format('"rps":%.1f', secs > 0 and summary.requests / secs or 0),
    string.format('"bytes":%d', summary.bytes),
    string.format('"latency_ms":{"p50":%s,"p90":%s,"p99":%s,"max":%s,"mean":%s}',
      ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
      ms(latency.max), ms(latency.mean)),
    string.format('"errors":%d', e.connect + e.read + e.write + e.timeout),
    string.format('"error_kinds":{"connect":%d,"read":%d,"write":%d,"timeout":%d}',
      e.connect, e.read, e.write, e.timeout),
    string.format('"non2xx":%d', e.status),
  }
  io.write("WRK_JSON {" .. table.concat(parts, ",") .. "}\n")
end
