-- wrk request script for `scripts/serve-bench.sh`: one POST, body read from $BODY, path $URLPATH,
-- Inference-Header-Content-Length from $HLEN when set (the binary tensor extension).
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = os.getenv("URLPATH")
wrk.headers["Content-Type"] = os.getenv("CTYPE")
local hlen = os.getenv("HLEN")
if hlen and hlen ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = hlen
end
