// Preloaded into the Prisma CLI by the tests (`node --require`): Prisma's schema engine races
// its advisory lock against a 10 s timer that it never clears, so every `migrate deploy` would
// wait 10 s after its work is done before Node.js exits. Long timers are unref'd: they still
// fire while the CLI works, but no longer keep a finished process alive.
"use strict";
const LONG_MS = 5000;
const setTimeoutOriginal = global.setTimeout;

global.setTimeout = function setTimeoutUnrefLong(callback, delay, ...args) {
  const timer = setTimeoutOriginal(callback, delay, ...args);
  if (delay >= LONG_MS && timer && typeof timer.unref === "function") {
    timer.unref();
  }
  return timer;
};
