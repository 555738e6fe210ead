// The JavaScript E2B SDK against Sandpit: create, run code with state, a file, kill.
// Run by tests/test_e2b_api_js.py with E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY set;
// prints one JSON line with what it saw (the Python test asserts on it).
import { Sandbox } from '@e2b/code-interpreter'

const sandbox = await Sandbox.create({ metadata: { title: 'from node' } })
const seen = { sandboxId: sandbox.sandboxId }
try {
  await sandbox.runCode('x = 20')
  seen.text = (await sandbox.runCode('x * 2 + 2')).text
  const stdout = []
  await sandbox.runCode('print("hello from python")', { onStdout: (m) => stdout.push(m.line) })
  seen.stdout = stdout
  seen.js = (await sandbox.runCode('console.log(6 * 7)', { language: 'js' })).logs.stdout
  seen.error = (await sandbox.runCode('1/0')).error?.name
  await sandbox.files.write('from-node.txt', 'written by node')
  seen.file = await sandbox.files.read('from-node.txt')
  seen.python_reads = (await sandbox.runCode('open("from-node.txt").read()')).text
} finally {
  await sandbox.kill()
}
seen.running = await sandbox.isRunning()
console.log(JSON.stringify(seen))
