/** Runs lab.lab.test.ts (the lab's own checks, before any firewall is applied) first, then the rest by name. */
const Sequencer = require("@jest/test-sequencer").default;

class LabSequencer extends Sequencer {
  sort(tests) {
    const rank = (t) => (t.path.endsWith("/lab.lab.test.ts") ? 0 : 1);
    return [...tests].sort((a, b) => rank(a) - rank(b) || a.path.localeCompare(b.path));
  }
}

module.exports = LabSequencer;
