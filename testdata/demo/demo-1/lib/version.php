<?php
// Which release this tree is. Every release ships its own copy.
const RELEASE_ID = 'demo-1';
