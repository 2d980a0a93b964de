// Entry point of the `tailgate` command (bin/tailgate.js runs this file, from src/ or dist/).
import { run } from './program.js';

process.exitCode = await run(process.argv.slice(2));
