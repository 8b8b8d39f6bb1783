# syntax=docker/dockerfile:1
# The Cryptr Vue sample, the browser side of Cryptr's tutorial, in front of this gateway:
# https://github.com/cryptr-examples/cryptr-vue2-sample, branch 07-backend-courses-api, whose
# profile page calls http://localhost:8000/api/v1/courses with the user's access token. It is
# cloned at build time, so none of it lives in this repository. docker/compose.yaml passes the
# VUE_APP_* arguments below from docker/.env; this file reads nothing from its build context.

# ---- build ----------------------------------------------------------------------------------
# Vue CLI 4.5 runs webpack 4, whose hashing needs OpenSSL 1.1 (MD4): Node 16 is the last to
# have it (on 17+ the build stops with ERR_OSSL_EVP_UNSUPPORTED). The full image has git and
# yarn 1, which the sample's yarn.lock is for.
FROM node:16 AS build
ARG VUE_SAMPLE_REPO=https://github.com/cryptr-examples/cryptr-vue2-sample.git
# At the time of writing this branch's head is 251c6a1 (2021-04-22).
ARG VUE_SAMPLE_BRANCH=07-backend-courses-api
RUN git clone --depth 1 --branch "$VUE_SAMPLE_BRANCH" "$VUE_SAMPLE_REPO" /app
WORKDIR /app
RUN yarn install --frozen-lockfile --non-interactive

# What the sample's src/main.js reads from process.env, written to .env.local as the sample's
# step 04 (branch 04-add-your-cryptr-credentials) tells. Vue CLI inlines them into the bundle at
# build time: changing one means rebuilding (`docker compose build vue-app`).
ARG VUE_APP_AUDIENCE=http://localhost:8080
ARG VUE_APP_CLIENT_ID
ARG VUE_APP_CRYPTR_BASE_URL=https://auth.cryptr.eu
ARG VUE_APP_CRYPTR_REGION=eu
ARG VUE_APP_CRYPTR_TELEMETRY=FALSE
ARG VUE_APP_DEFAULT_LOCALE=en
ARG VUE_APP_DEFAULT_REDIRECT_URI=http://localhost:8080
ARG VUE_APP_TENANT_DOMAIN
# Without these two the app builds but no one can sign in: better to stop here and say why.
RUN if [ -z "$VUE_APP_TENANT_DOMAIN" ] || [ -z "$VUE_APP_CLIENT_ID" ]; then \
      echo "VUE_APP_TENANT_DOMAIN and VUE_APP_CLIENT_ID are empty: set CRYPTR_TENANT_DOMAIN and CRYPTR_CLIENT_ID in docker/.env (see docker/.env.example)" >&2; \
      exit 1; \
    fi
RUN printf '%s\n' \
      "VUE_APP_AUDIENCE=$VUE_APP_AUDIENCE" \
      "VUE_APP_CLIENT_ID=$VUE_APP_CLIENT_ID" \
      "VUE_APP_CRYPTR_BASE_URL=$VUE_APP_CRYPTR_BASE_URL" \
      "VUE_APP_CRYPTR_REGION=$VUE_APP_CRYPTR_REGION" \
      "VUE_APP_CRYPTR_TELEMETRY=$VUE_APP_CRYPTR_TELEMETRY" \
      "VUE_APP_DEFAULT_LOCALE=$VUE_APP_DEFAULT_LOCALE" \
      "VUE_APP_DEFAULT_REDIRECT_URI=$VUE_APP_DEFAULT_REDIRECT_URI" \
      "VUE_APP_TENANT_DOMAIN=$VUE_APP_TENANT_DOMAIN" \
      > .env.local \
 && yarn build

# ---- serve ----------------------------------------------------------------------------------
# Static files only. The sample's router uses hash mode, so every page is index.html at `/`
# (Cryptr sends the user back to `/?code=...&state=...`): nginx's default site is enough.
FROM nginx:stable-alpine
COPY --from=build /app/dist /usr/share/nginx/html
EXPOSE 80
