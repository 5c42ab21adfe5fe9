"""The README and docs/: every relative link resolves (file and heading), every command they show names
a file that exists and passes its script's own argument parser, the README stays a front page, and the
paper's command table is what tools/paper_runs.py prints."""
import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import threading

import argparse
import pytest

from conftest import ROOT

DOCS = [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped (hyphens and underscores kept),
    spaces to hyphens."""
    text = re.sub(r'[`*]', '', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def headings(path):
    with open(path) as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)  # no headings inside code
    return {slug(m.group(1)) for m in re.finditer(r'(?m)^#{1,6} (.+)$', text)}


def test_every_relative_link_resolves():
    broken = []
    for doc in DOCS:
        with open(doc) as f:
            text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'^[a-z]+://', target) or target.startswith('mailto:'):
                continue
            path, _, anchor = target.partition('#')
            full = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            if not os.path.exists(full):
                broken.append('%s: %s (no such file)' % (os.path.relpath(doc, ROOT), target))
            elif anchor and full.endswith('.md') and anchor not in headings(full):
                broken.append('%s: %s (no such heading)' % (os.path.relpath(doc, ROOT), target))
    assert not broken, broken


def test_readme_is_a_front_page():
    with open(os.path.join(ROOT, 'README.md')) as f:
        assert len(f.read().splitlines()) <= 260


def commands():
    """(document, command) for every shell command in the code blocks of the README and docs/."""
    out = []
    for doc in DOCS:
        with open(doc) as f:
            lines = f.read().splitlines()
        block, fenced, variables = [], False, {}  # shell variables hold across a document's snippets
        for line in lines + ['']:
            if line.startswith('```'):
                fenced = not fenced
                continue
            if (line.startswith('    ') and not fenced) or (fenced and line.strip()):
                block.append(line.strip())
                continue
            logical = []  # lines ending with a backslash continue on the next
            for piece in block:
                if logical and logical[-1].endswith('\\'):
                    logical[-1] = logical[-1][:-1] + ' ' + piece
                else:
                    logical.append(piece)
            block = []
            expand = lambda text: re.sub(r'\$\{?(\w+)\}?', lambda m: variables.get(m.group(1), '1'), text)
            for line_ in logical:
                # a shell snippet's variables: A="--flags ...", `for s in 1 2 3; do` (its first value),
                # `set -- $cfg` (positional $1, $2, ...)
                loop = re.match(r'^for (\w+) in (.+?); do(?: set -- \$(\w+))?', line_)
                if loop:
                    variables[loop.group(1)] = shlex.split(loop.group(2))[0]
                    if loop.group(3):
                        variables.update({str(i + 1): v for i, v in enumerate(variables[loop.group(3)].split())})
                    continue
                statements = re.split(r'&&|\||;(?=(?:[^"]*"[^"]*")*[^"]*$)', re.sub(r'\s#[^"]*$', '', line_))
                for cmd in statements:
                    assignment = re.match(r'^\s*(\w+)=(.*)$', cmd)
                    if assignment:
                        variables[assignment.group(1)] = ' '.join(shlex.split(assignment.group(2)))
                        continue
                    cmd = expand(expand(cmd)).strip()  # twice: a variable's value may name another
                    if re.match(r'^(python3?|torchrun|bash) ', cmd) and not re.match(r'^python3? -c', cmd):
                        out.append((os.path.relpath(doc, ROOT), cmd))
    return out


class _Parsed(Exception):
    pass


_DEPTH = threading.local()


def parses(script, argv):
    """Whether the script's own argparse accepts argv (its main is called; parsing is where it stops)."""
    real_args, real_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def parse_args(self, args=None, namespace=None):
        _DEPTH.n = getattr(_DEPTH, 'n', 0) + 1
        try:
            real_args(self, args, namespace)
        finally:
            _DEPTH.n -= 1
        raise _Parsed()

    def parse_known_args(self, args=None, namespace=None):
        result = real_known(self, args, namespace)
        if getattr(_DEPTH, 'n', 0) == 0:  # called directly (demo.py passes the rest on)
            raise _Parsed()
        return result
    name = 'doc_' + re.sub(r'\W', '_', script)
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse_args, parse_known_args
    try:
        module.main(argv)
    except _Parsed:
        return True
    except SystemExit:
        return False
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = real_args, real_known
    return True


def test_every_command_names_a_file_and_passes_its_parser(capsys):
    """Paths and flags as the docs write them (placeholders like <Clothing1M root> stand for any value)."""
    cmds = commands()
    assert len(cmds) > 40
    bad = []
    for doc, cmd in cmds:
        words = shlex.split(re.sub(r'<[^>]*>', 'X', cmd))
        if words[0] == 'torchrun':
            words = ['python'] + words[words.index('--') + 1:]
        if words[0] == 'bash':
            if not os.path.exists(os.path.join(ROOT, words[1])):
                bad.append((doc, cmd, 'no such file'))
            continue
        if words[1] == '-m':  # python -m pytest / venv / pip / Train_x (after pip install .)
            continue
        script, argv = words[1], [w for w in words[2:] if w != '...']
        if not os.path.exists(os.path.join(ROOT, script)):
            bad.append((doc, cmd, 'no such file'))
        elif not parses(script, argv):
            bad.append((doc, cmd, capsys.readouterr().err.strip().splitlines()[-1:]))
    assert not bad, bad


def test_the_papers_command_table_is_what_paper_runs_prints():
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'paper_runs.py'), '--markdown'],
                          capture_output=True, text=True, timeout=120, check=True)
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    rows = [l for l in done.stdout.splitlines() if l.startswith('| cifar')]
    assert len(rows) == 9 and all(row in readme for row in rows)
