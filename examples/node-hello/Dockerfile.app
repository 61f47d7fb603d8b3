# The app layer of node-hello: the service's code on top of its dependency base (BASE_IMAGE, tagged
# with the base key). PORT is fast-build.toml's [container] port.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PORT=3000
WORKDIR /app
COPY server.js ./
ENV PORT=${PORT} NODE_ENV=production
EXPOSE ${PORT}
CMD ["node", "server.js"]
