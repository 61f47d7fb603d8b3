/**
 * The function app's entry (package.json `main`): importing it registers every function. The API
 * and timer triggers are one table whose handlers load on first call (register.ts); the
 * orchestrator and activities register in orchestration.ts.
 */
import "./register.js";
import "./orchestration.js";
