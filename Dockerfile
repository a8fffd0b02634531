# One image for every changetrail process; docker-compose.yml runs it as `api` and as `worker`.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# The production image leaves out the AWS stand-in that `demo` and `dev aws-standin` need.
RUN cargo build --release --locked -p changetrail --no-default-features

FROM debian:bookworm-slim
# ca-certificates for TLS to AWS and PostgreSQL; curl for the compose health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/changetrail --create-home changetrail
COPY --from=build /src/target/release/changetrail /usr/local/bin/changetrail
USER changetrail
ENV CHANGETRAIL_LISTEN=0.0.0.0:8080 \
    CHANGETRAIL_DATA_DIR=/var/lib/changetrail
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/changetrail"]
CMD ["serve"]
