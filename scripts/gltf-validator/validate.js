// Validates a .glb with the Khronos glTF validator; prints its report's counts and first messages as JSON.
// Usage: node scripts/gltf-validator/validate.js MODEL.glb
const fs = require("fs");
const validator = require("gltf-validator");

validator
  .validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])), { maxIssues: 100 })
  .then((report) => {
    const issues = report.issues;
    console.log(JSON.stringify({
      errors: issues.numErrors, warnings: issues.numWarnings, infos: issues.numInfos, hints: issues.numHints,
      messages: issues.messages.slice(0, 20),
    }));
  })
  .catch((err) => { console.error(String(err)); process.exit(2); });
