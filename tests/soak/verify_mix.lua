-- wrk script of `make soak`: verification of valid, deleted and forged keys,
-- each answer checked against what that key must get.
--
--   wrk -tN -cN ... -s tests/soak/verify_mix.lua URL -- CASES_FILE
--
-- Each line of CASES_FILE is "CODE MODE KEY [ENVIRONMENT]": the code the
-- key must get (VALID, NOT_FOUND, MALFORMED, ENVIRONMENT_MISMATCH), and
-- verify (POST /v1/keys/verify, expects 200 and that "code") or auth
-- (GET /v1/auth, expects 204 for VALID, else 401, with that X-Keyward-Code).
-- ENVIRONMENT is the one the request requires.
--
-- Run with as many connections as threads (-tN -cN): a thread's only
-- connection sends a request and waits for its answer, so the answer
-- wrk hands to response() is the one to the last request() of that thread.
-- done() prints one line "KWSOAK {json}" with the figures.

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

local cases = {}
local n, i = 0, 0
local expect = nil
bad = 0
first_bad = ""

function init(args)
    local path = args[1]
    for line in io.lines(path) do
        local code, mode, key, env = line:match("^(%S+) (%S+) (%S+) ?(%S*)$")
        assert(code, "bad line in " .. path .. ": " .. line)
        local req
        if mode == "auth" then
            local headers = {["API-Key"] = key}
            if env ~= "" then headers["X-Keyward-Environment-Required"] = env end
            req = wrk.format("GET", "/v1/auth", headers)
        else
            local body = '{"key":"' .. key .. '"'
            if env ~= "" then body = body .. ',"environment":"' .. env .. '"' end
            req = wrk.format("POST", "/v1/keys/verify",
                {["Content-Type"] = "application/json"}, body .. "}")
        end
        n = n + 1
        cases[n] = {req = req, code = code, mode = mode}
    end
    assert(n > 0, "no cases in " .. path)
    -- Threads start at different places of the list.
    i = (id or 0) * 7919 % n
end

function request()
    i = i % n + 1
    expect = cases[i]
    return expect.req
end

local function header(headers, name)
    name = name:lower()
    for k, v in pairs(headers) do
        if k:lower() == name then return v end
    end
    return nil
end

function response(status, headers, body)
    local c = expect
    local ok
    if c == nil then
        ok = false
    elseif c.mode == "auth" then
        local want = c.code == "VALID" and 204 or 401
        ok = status == want and header(headers, "X-Keyward-Code") == c.code
    else
        ok = status == 200 and string.find(body, '"code":"' .. c.code .. '"', 1, true) ~= nil
    end
    if not ok then
        bad = bad + 1
        if first_bad == "" then
            first_bad = string.format("%s %s: status %d, code %s, body %s",
                c and c.mode or "?", c and c.code or "?", status,
                tostring(header(headers, "X-Keyward-Code")), body:sub(1, 120))
        end
    end
    expect = nil
end

function done(summary, latency, requests)
    local b, first = 0, ""
    for _, t in ipairs(threads) do
        b = b + t:get("bad")
        if first == "" then first = t:get("first_bad") end
    end
    local e = summary.errors
    io.write(string.format(
        'KWSOAK {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
        '"bad":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,' ..
        '"first_bad":"%s"}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.max, b, e.connect, e.read, e.write, e.timeout,
        first:gsub('[%c"\\]', "?")))
end
