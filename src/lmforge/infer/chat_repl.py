"""`lmforge chat RUN`: a terminal conversation with a model, streamed token by token.

Commands: /reset clears the history, /system TEXT sets the system prompt (and
resets), /exit (or end of input) quits. Input and output streams are parameters
so the loop can be driven by tests or other programs.
"""

from __future__ import annotations

import sys
from typing import TextIO

from lmforge.errors import UserError
from lmforge.infer.engine import Engine

HELP = "Commands: /reset, /system TEXT, /exit"


def run_chat(engine: Engine, *, system: str | None = None, stdin: TextIO | None = None,
             stdout: TextIO | None = None, prompt: str = "you> ", reply_prefix: str = "model> ",
             **sampling) -> list[dict]:
    """Run the loop until /exit or end of input; return the final conversation.

    `sampling` holds generation options (temperature, max_tokens, top_p, ...) for every reply.
    """
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    history: list[dict] = []
    stdout.write(HELP + "\n")
    while True:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            history.clear()
            stdout.write("(history cleared)\n")
            continue
        if text == "/system" or text.startswith("/system "):
            system = text[len("/system"):].strip() or None
            history.clear()
            stdout.write(f"(system prompt {'set' if system else 'cleared'}; history cleared)\n")
            continue
        if text.startswith("/"):
            stdout.write(f"unknown command {text.split()[0]!r}. {HELP}\n")
            continue
        history.append({"role": "user", "content": text})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        stdout.write(reply_prefix)
        try:
            answer = []
            for piece in engine.chat_stream(messages, **sampling):
                answer.append(piece)
                stdout.write(piece)
                stdout.flush()
        except UserError as e:   # e.g. the conversation outgrew the context: say so and keep going
            history.pop()
            stdout.write(f"\n[{e}; use /reset to start over]\n")
            continue
        stdout.write("\n")
        history.append({"role": "assistant", "content": "".join(answer)})
    return history
