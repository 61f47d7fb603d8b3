/**
 * Passes one HTTP request on to `upstream` and its answer back: the proxies the benches put in
 * front of the local function app (to count requests, or to play a host that is down) forward
 * with this.
 */
import { request, type IncomingMessage, type ServerResponse } from "node:http";

export function forward(req: IncomingMessage, res: ServerResponse, upstream: URL): void {
  const onward = request(
    {
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: upstream.host },
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  onward.on("error", () => res.destroy());
  req.pipe(onward);
}
