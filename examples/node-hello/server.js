// A tiny HTTP service: fast-build builds it with the project's own Dockerfiles (see fast-build.toml).
"use strict";
const http = require("node:http");

const port = Number(process.env.PORT || 3000);
const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end("hello from node\n");
});
server.listen(port, () => console.log(`listening on ${port}`));
