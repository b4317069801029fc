"""What tests and benchmarks build on, kept out of the wheel: fakes, tiny checkpoints, real test servers.

Owns: fake backend kinds (`fakes`), tiny random-weight checkpoints built in code (`tiny_chat`,
`tiny_audio`, `tiny_speech`), a real OpenAI-compatible server (`openai_server`, `transformers serve`),
a real PostgreSQL server (`pg`), the frozen version-1 schema (`schema_v1`), the real app served on
loopback (`served`), threads started at one moment (`threads`), the API load clients (`api_clients`),
the kill -9 target (`faults_server`) and one `free_port` (`net`).
Ignores: assertions; those live in the test files.
"""
