#!/usr/bin/env bash
# Commits an image bump to the GitOps manifests repository: clones it, sets exactly one YAML
# key (bump-image.mjs) in one file, commits with the app, the new tag and the source commit
# in the message, and pushes. When the push is rejected because another pipeline pushed
# first, it fetches the new tip, applies the same edit on it again and retries, a bounded
# number of times with backoff.
#
# Parameters (environment; see README.md next to this file):
#   MANIFESTS_REPO      host/path of the manifests repository (https), e.g. gitlab.example.com/platform/manifests
#   MANIFESTS_URL       full clone URL; overrides MANIFESTS_REPO (a local path works, for tests)
#   MANIFESTS_BRANCH    branch to commit to. Defaults to main.
#   MANIFEST_FILE       file inside the manifests repository, e.g. apps/backend-service/values-prod.yaml
#   IMAGE_KEY           dotted YAML key to set, e.g. image.tag
#   IMAGE_TAG           value to set. Defaults to $CI_COMMIT_SHA.
#   APP_NAME            app named in the commit message. Defaults to $CI_PROJECT_NAME.
#   GITOPS_TOKEN        token with write access to the manifests repository; required for https.
#                       Handed to git by a credential helper that reads it from the environment:
#                       it is never in a URL, a config file, an argument or the log.
#   PUSH_ATTEMPTS       bounded number of push attempts. Defaults to 5.
#   BACKOFF_SECONDS     base of the exponential backoff between attempts. Defaults to 2.
#   GIT_TIMEOUT_SECONDS bound on each git network operation. Defaults to 120.
#   BUMP_TOOL           path of bump-image.mjs. Defaults to the one next to this script.
# Read from GitLab's predefined variables: CI_PROJECT_PATH, CI_COMMIT_SHA, CI_PROJECT_NAME,
# CI_PIPELINE_URL, GITLAB_USER_NAME, GITLAB_USER_EMAIL.
set -euo pipefail

fail() {
  echo "update-manifests: $*" >&2
  exit 1
}
log() {
  echo "update-manifests: $*"
}
require() {
  local name=$1
  [ -n "${!name:-}" ] || fail "$name is not set ($2)"
}

require CI_PROJECT_PATH "GitLab's predefined variable: the source project"
require CI_COMMIT_SHA "GitLab's predefined variable: the source commit"
require MANIFEST_FILE "file in the manifests repository, e.g. apps/backend-service/values-prod.yaml"
require IMAGE_KEY "dotted YAML key, e.g. image.tag"
IMAGE_TAG=${IMAGE_TAG:-$CI_COMMIT_SHA}
APP_NAME=${APP_NAME:-${CI_PROJECT_NAME:-${CI_PROJECT_PATH##*/}}}
MANIFESTS_BRANCH=${MANIFESTS_BRANCH:-main}
PUSH_ATTEMPTS=${PUSH_ATTEMPTS:-5}
BACKOFF_SECONDS=${BACKOFF_SECONDS:-2}
GIT_TIMEOUT_SECONDS=${GIT_TIMEOUT_SECONDS:-120}
BUMP_TOOL=${BUMP_TOOL:-"$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bump-image.mjs"}

case "$MANIFEST_FILE" in
  /* | ../* | */../* | */.. | ..) fail "MANIFEST_FILE must be a path inside the manifests repository, got $MANIFEST_FILE" ;;
esac
for n in PUSH_ATTEMPTS BACKOFF_SECONDS GIT_TIMEOUT_SECONDS; do
  [[ ${!n} =~ ^[0-9]+$ ]] || fail "$n must be a whole number, got ${!n}"
done
[ "$PUSH_ATTEMPTS" -ge 1 ] || fail "PUSH_ATTEMPTS must be at least 1"
[ -f "$BUMP_TOOL" ] || fail "bump tool $BUMP_TOOL not found (set BUMP_TOOL)"

if [ -n "${MANIFESTS_URL:-}" ]; then
  url=$MANIFESTS_URL
else
  require MANIFESTS_REPO "host/path of the manifests repository, e.g. gitlab.example.com/platform/manifests"
  case "$MANIFESTS_REPO" in
    *://* | *@*) fail "MANIFESTS_REPO is host/path only (no scheme, no user): the token is added by git's credential helper" ;;
  esac
  url="https://${MANIFESTS_REPO%.git}.git"
fi

# Git reads its credentials from this helper, which prints the token from the environment when
# asked; `credential.helper=` first drops any helper configured on the runner. The config is
# passed through GIT_CONFIG_* variables, so nothing is written to disk and the clone's remote URL
# holds no secret. Never prompt: a missing or wrong token fails at once.
export GIT_TERMINAL_PROMPT=0
export GIT_CONFIG_COUNT=2
export GIT_CONFIG_KEY_0=credential.helper GIT_CONFIG_VALUE_0=
export GIT_CONFIG_KEY_1=credential.helper
# The value is shell code for git's helper shell, which expands "$GITOPS_TOKEN" from the
# environment when git asks; this shell must not expand it or read the quotes.
# shellcheck disable=SC2016,SC2089,SC2090
export GIT_CONFIG_VALUE_1='!f() { test "$1" = get && test -n "${GITOPS_TOKEN:-}" || return 0; printf "username=oauth2\npassword=%s\n" "$GITOPS_TOKEN"; }; f'
case "$url" in
  https://*)
    require GITOPS_TOKEN "a masked, protected CI/CD variable with write access to the manifests repository"
    export GITOPS_TOKEN
    ;;
esac

git_net() {
  timeout "$GIT_TIMEOUT_SECONDS" git "$@"
}

workdir=$(mktemp -d)
trap 'rm -rf -- "$workdir"' EXIT
repo="$workdir/manifests"

log "cloning ${url} (${MANIFESTS_BRANCH})"
git_net clone --quiet --single-branch --branch "$MANIFESTS_BRANCH" -- "$url" "$repo" \
  || fail "cannot clone the manifests repository (check MANIFESTS_REPO and that GITOPS_TOKEN may read it)"
cd "$repo"
[ -f "$MANIFEST_FILE" ] || fail "$MANIFEST_FILE does not exist on ${MANIFESTS_BRANCH}; create it with the key $IMAGE_KEY first"

committer_name="GitOps bump (${CI_PROJECT_PATH})"
committer_email="gitops-bump@${CI_SERVER_HOST:-localhost}"
author_name=${GITLAB_USER_NAME:-$committer_name}
author_email=${GITLAB_USER_EMAIL:-$committer_email}

message_file="$workdir/message"
{
  printf '%s: set %s to %s\n\n' "$APP_NAME" "$IMAGE_KEY" "$IMAGE_TAG"
  printf 'File: %s\n' "$MANIFEST_FILE"
  printf 'Source: %s@%s\n' "$CI_PROJECT_PATH" "$CI_COMMIT_SHA"
  if [ -n "${CI_PIPELINE_URL:-}" ]; then printf 'Pipeline: %s\n' "$CI_PIPELINE_URL"; fi
} >"$message_file"

# Applies the bump on the checked-out tip and commits it. Returns 1 when there is nothing to
# commit (the file already holds the value).
# It runs in `if` context, where errexit is off, so every step checks its own status.
bump_and_commit() {
  node "$BUMP_TOOL" "$MANIFEST_FILE" "$IMAGE_KEY" "$IMAGE_TAG" || fail "bump refused; nothing was pushed"
  local rc=0
  git diff --quiet -- "$MANIFEST_FILE" || rc=$?
  case $rc in
    0) return 1 ;;
    1) ;;
    *) fail "git diff failed (exit $rc)" ;;
  esac
  git add -- "$MANIFEST_FILE" || fail "git add failed"
  GIT_AUTHOR_NAME=$author_name GIT_AUTHOR_EMAIL=$author_email \
    GIT_COMMITTER_NAME=$committer_name GIT_COMMITTER_EMAIL=$committer_email \
    git commit --quiet --no-verify --file "$message_file" || fail "git commit failed"
}

if ! bump_and_commit; then
  log "$MANIFEST_FILE already sets $IMAGE_KEY to $IMAGE_TAG; nothing to push"
  exit 0
fi

attempt=1
while :; do
  if git_net push --quiet origin "HEAD:refs/heads/${MANIFESTS_BRANCH}"; then
    log "pushed $(git rev-parse --short HEAD) to ${MANIFESTS_BRANCH} (attempt ${attempt}/${PUSH_ATTEMPTS})"
    exit 0
  fi
  if [ "$attempt" -ge "$PUSH_ATTEMPTS" ]; then
    fail "push rejected ${attempt} times; giving up (nothing else was changed)"
  fi
  delay=$((BACKOFF_SECONDS * (1 << (attempt - 1)) + RANDOM % (BACKOFF_SECONDS + 1)))
  attempt=$((attempt + 1))
  log "push rejected (another pipeline pushed first?); rebasing onto origin/${MANIFESTS_BRANCH} in ${delay}s, attempt ${attempt}/${PUSH_ATTEMPTS}"
  sleep "$delay"
  git_net fetch --quiet origin "+refs/heads/${MANIFESTS_BRANCH}:refs/remotes/origin/${MANIFESTS_BRANCH}" \
    || fail "cannot fetch ${MANIFESTS_BRANCH} from the manifests repository"
  # Rebase by replaying the edit, not the diff: set the key again on the new tip. A textual
  # rebase conflicts when another bump touched a neighbouring line of the same file; setting
  # one key cannot, and it notices when the new tip already holds the value.
  git reset --quiet --hard "origin/${MANIFESTS_BRANCH}"
  if ! bump_and_commit; then
    log "${MANIFESTS_BRANCH} already sets $IMAGE_KEY to $IMAGE_TAG; nothing to push"
    exit 0
  fi
done
