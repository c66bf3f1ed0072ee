<?php
// The release's greeting. MESSAGE_RELEASE names the release too, so the page
// can tell whether the files it read all came from one tree.
const MESSAGE_RELEASE = 'demo-2';

function demo_message(): string
{
    return 'Hello from the second release, deployed while you watched';
}
