// Every test file runs on the backend CI asks for (native TensorFlow by default).
import { resolveBackend, type BackendChoice } from '../src/backend/resolve.js';

const wanted = (process.env['SPLITFIT_TEST_BACKEND'] ?? 'auto') as BackendChoice;
await resolveBackend(wanted);
