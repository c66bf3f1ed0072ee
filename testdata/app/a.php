<?php $parts[] = 'a@__RELEASE__';
